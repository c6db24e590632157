// The committed machine code is exactly what the assembly sources assemble to.
import assert from "node:assert/strict";

const TOOLS = ["as", "objcopy", "objdump", "aarch64-linux-gnu-as", "aarch64-linux-gnu-objcopy"];

function missingTools(): string[] {
  return TOOLS.filter((tool) => {
    try {
      return !new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
        .outputSync().success;
    } catch {
      return true;
    }
  });
}

const missing = missingTools();
if (missing.length) {
  console.log(
    `skipped: ffi/_spawner_code.ts matches ffi/spawner/*.S: requires ${missing.join(", ")} ` +
      "(apt-get install binutils binutils-aarch64-linux-gnu)",
  );
}

Deno.test({
  name: "ffi/_spawner_code.ts matches ffi/spawner/*.S, byte for byte",
  ignore: missing.length > 0,
  async fn() {
    const script = new URL("../scripts/build-spawner.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, "--check"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /matches its assembly sources/);
  },
});
