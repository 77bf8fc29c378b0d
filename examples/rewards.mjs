// Rewards as code for examples/grpo-verifiable.yaml: a verifiable reward on
// the farm's closed instruction families (arithmetic, sorting, reversing,
// counting, ...), which have one right answer. The right answer comes from
// the instruction itself (the farm's families can read their own
// instructions back); the open families (several right answers) are not
// applicable (null), as TRL's None.
import { FAMILIES, answerOf, parseTask } from 'rlfarm'

const KIND = new Map(FAMILIES.map((f) => [f.name, f.kind]))

/** 1 when the response is exactly the right answer (its first line, with nothing after it), else 0. */
export function accuracy({ prompts, completions }) {
  return completions.map((completion, i) => {
    const task = parseTask(prompts[i])
    if (!task || KIND.get(task.family) !== 'closed') return null
    const { answer, junk } = answerOf(completion)
    return answer === task.answer && junk === 0 ? 1 : 0
  })
}
