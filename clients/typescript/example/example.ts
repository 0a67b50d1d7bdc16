// The README example: the per-layer top-1 tokens of a prompt through a lens, then a greedy
// generation read out at layer 3, against the server at $LENSD_ADDRESS with $LENSD_TOKEN.
//   npm run build && node dist/example/example.js tuned "And God said, ..."
import { Client } from "../src";

async function main(): Promise<void> {
  const [lens = "logit", ...words] = process.argv.slice(2);
  const prompt = words.length ? words.join(" ") : "And God said, Let there be light: and there was";
  const client = new Client();
  try {
    const result = await client.decode(prompt, { lens, topK: 1 });
    result.rowLabels().forEach((label, i) => console.log(`${label.padEnd(7)} ${result.top1(i).join(" | ")}`));
    let text = prompt;
    for await (const token of client.generate(prompt, { lens, layer: 3, greedy: true, maxNewTokens: 12 })) {
      text += token.token?.text ?? "";
    }
    console.log(text);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
