// The farm's word list (open-ended families draw their right answers from it).
export const WORDS: readonly string[] = [
  'act', 'add', 'age', 'air', 'all', 'and', 'ant', 'any', 'ape', 'arm', 'art', 'ash', 'ask', 'bad',
  'bag', 'bat', 'bay', 'bed', 'bee', 'big', 'bin', 'bird', 'boat', 'body', 'bone', 'book', 'boot',
  'bow', 'box', 'boy', 'bring', 'bug', 'bus', 'cake', 'call', 'can', 'cap', 'car', 'cat', 'cold',
  'cook', 'cool', 'cow', 'cry', 'cup', 'cut', 'day', 'dig', 'dog', 'doll', 'door', 'dot', 'dry',
  'duck', 'ear', 'eat', 'egg', 'end', 'eye', 'fan', 'far', 'fat', 'feed', 'fig', 'fish', 'fit',
  'fly', 'fog', 'fox', 'fun', 'game', 'gas', 'gift', 'girl', 'go', 'goat', 'gold', 'good', 'gum',
  'hat', 'hay', 'hen', 'hill', 'hit', 'hog', 'hot', 'hug', 'ice', 'ink', 'jam', 'jar', 'jet',
  'job', 'jog', 'joy', 'jug', 'keg', 'key', 'kid', 'king', 'kit', 'kite', 'kiss', 'lake', 'lamp',
  'land', 'leg', 'lid', 'lip', 'log', 'low', 'mad', 'man', 'map', 'mat', 'meat', 'milk', 'mix',
  'mom', 'moon', 'mop', 'mud', 'mug', 'nap', 'net', 'new', 'nose', 'not', 'nut', 'oak', 'oat',
  'odd', 'oil', 'old', 'owl', 'pan', 'pat', 'pay', 'pen', 'pet', 'pig', 'pin', 'pot', 'ran', 'rat',
  'ray', 'red', 'rice', 'ring', 'road', 'rod', 'rot', 'row', 'rug', 'run', 'sad', 'sat', 'say',
  'sea', 'see', 'seed', 'sing', 'sit', 'sky', 'sow', 'sun', 'tan', 'tea', 'tee', 'ten', 'tin',
  'toe', 'top', 'tow', 'toy', 'tree', 'up', 'van', 'vat', 'vet', 'wag', 'war', 'way', 'web', 'wed',
  'wet', 'win', 'wing', 'wig', 'wow', 'yak', 'yam', 'yes', 'yet', 'zoo', 'zip', 'thing', 'may',
  'fee', 'free', 'how', 'now', 'got', 'lot', 'tot', 'fed', 'led',
]
