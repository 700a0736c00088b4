// The app the jsinit guest runs: a table built when the script is evaluated (the start work
// pre-initialisation moves to build time), and main(args), called per run.
const words = [];
for (let i = 0; i < 20000; i++) {
  words.push({ n: i, word: "w" + (i * 7919 % 20000).toString(36), square: i * i });
}
const index = new Map(words.map((w) => [w.word, w]));

function main(args) {
  const found = args.map((a) => (index.has(a) ? a + "=" + index.get(a).n : a + "?"));
  return "Hello from JavaScript: " + words.length + " words, " + found.join(" ");
}
