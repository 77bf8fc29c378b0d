// --set overrides that shrink examples/validation.yaml (and the farm-sft.yaml
// it extends) to a tiny farm and model, so that the real example runs in a
// test in minutes: the stages, their references and the eval naming stay.
import fs from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'

const EXAMPLES = path.join(__dirname, '..', '..', 'examples')

interface Stage {
  name: string
  run: Record<string, any>
}

/** The stages of an example with those of the files it extends before them, as the pipeline runs them (aliases allowed as the config loader allows them). */
export function exampleStages(file: string): Stage[] {
  const doc = parse(fs.readFileSync(path.join(EXAMPLES, file), 'utf8'), { merge: true, maxAliasCount: 1000 }) as { extends?: string; stages: Stage[] }
  return [...(doc.extends ? exampleStages(doc.extends) : []), ...doc.stages]
}

/** The --set arguments (flag and value pairs) that make every stage of the validation tiny. */
export function shrinkValidation(): string[] {
  const sets: string[] = []
  exampleStages('validation.yaml').forEach((stage, i) => {
    const at = (key: string, value: string | number) => sets.push('--set', `stages[${i}].run.${key}=${value}`)
    const run = stage.run
    if (run.generation) at('generation.max_new_tokens', 10)
    switch (run.algorithm) {
      case 'farm':
        for (const [k, v] of Object.entries({ sft_size: 2000, preference_size: 200, unlabelled_size: 32, eval_size: 30, validation_size: 30 })) at(`farm.${k}`, v)
        break
      case 'sft':
        for (const [k, v] of Object.entries({ hidden_size: 64, layers: 1, heads: 2 })) at(`policy.init.${k}`, v)
        at('training.max_steps', stage.name === 'sft' ? 1000 : 150)
        at('training.batch_size', 16)
        at('optimizer.warmup_steps', 2)
        break
      case 'label':
        at('training.batch_size', 100)
        break
      case 'reward':
        at('training.max_steps', 4)
        at('training.batch_size', 16)
        at('data.eval_size', 20)
        at('optimizer.warmup_steps', 1)
        break
      case 'best_of_n':
        at('best_of_n.n', Math.max(2, Math.round(Math.log2(run.best_of_n.n))))
        at('training.batch_size', 15)
        break
      case 'expert_iteration':
        at('expert_iteration.n', 2)
        at('expert_iteration.prompts_per_round', 16)
        at('training.batch_size', 8)
        break
      case 'dpo':
        at('training.max_steps', 3)
        at('training.batch_size', 8)
        at('optimizer.warmup_steps', 1)
        break
      case 'ppo':
        at('training.max_steps', 2)
        at('training.batch_size', 8)
        at('ppo.minibatch_size', 8)
        break
      case 'grpo':
        at('training.max_steps', 2)
        at('training.batch_size', 4)
        at('group.group_size', 2)
        break
      case 'west_of_n':
        at('west_of_n.n', 2)
        at('data.eval_size', 16)
        at('training.max_steps', 3)
        at('training.batch_size', 8)
        at('optimizer.warmup_steps', 1)
        break
      case 'eval':
        at('training.batch_size', 30)
        break
    }
  })
  return sets
}
