// Checking Outpost's audit log in the browser, as `outpostctl audit
// verify` does (package audit): the checkpoint is a C2SP tlog-checkpoint
// signed as a note (golang.org/x/mod/sumdb/note, Ed25519), the records
// are the leaves of an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog).
// Everything here uses WebCrypto (SHA-256 and, where the browser has it,
// Ed25519); nothing is trusted from the node but what the signature covers.

const utf8 = new TextEncoder();

export function b64decode(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const buf = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);

// leafHash is tlog.RecordHash: SHA-256(0x00 || data).
export const leafHash = (data: Uint8Array) => sha256(LEAF, data);
// nodeHash is tlog.NodeHash: SHA-256(0x01 || left || right).
export const nodeHash = (l: Uint8Array, r: Uint8Array) => sha256(NODE, l, r);

// TreeBuilder computes the RFC 6962 root of leaves added in order: a
// stack of perfect subtrees, merged as they pair up, folded right to left
// at the end (the same root as tlog.TreeHash).
export class TreeBuilder {
  private stack: { h: Uint8Array; n: number }[] = [];
  count = 0;

  async add(leaf: Uint8Array) {
    let cur = { h: leaf, n: 1 };
    while (this.stack.length && this.stack[this.stack.length - 1].n === cur.n) {
      const left = this.stack.pop()!;
      cur = { h: await nodeHash(left.h, cur.h), n: left.n * 2 };
    }
    this.stack.push(cur);
    this.count++;
  }

  async root(): Promise<Uint8Array> {
    if (this.stack.length === 0) return sha256(); // tlog's empty tree
    let h = this.stack[this.stack.length - 1].h;
    for (let i = this.stack.length - 2; i >= 0; i--) h = await nodeHash(this.stack[i].h, h);
    return h;
  }
}

// maxpow2 is the largest power of two below n (n >= 2).
function maxpow2(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// runProof is tlog's runRecordProof: the root that proof p and the leaf
// hash give for leaf n of the tree of leaves [lo, hi), or null.
async function runProof(p: Uint8Array[], lo: number, hi: number, n: number, leaf: Uint8Array): Promise<Uint8Array | null> {
  if (lo + 1 === hi) return p.length === 0 ? leaf : null;
  if (p.length === 0) return null;
  const k = maxpow2(hi - lo);
  const last = p[p.length - 1];
  if (n < lo + k) {
    const th = await runProof(p.slice(0, -1), lo, lo + k, n, leaf);
    return th && nodeHash(th, last);
  }
  const th = await runProof(p.slice(0, -1), lo + k, hi, n, leaf);
  return th && nodeHash(last, th);
}

// checkInclusion reports whether proof shows leaf n (its leaf hash) in
// the tree of size leaves whose root is root (tlog.CheckRecord).
export async function checkInclusion(proof: Uint8Array[], size: number, root: Uint8Array, n: number, leaf: Uint8Array): Promise<boolean> {
  if (n < 0 || n >= size) return false;
  const got = await runProof(proof, 0, size, n, leaf);
  return got !== null && equalBytes(got, root);
}

// A signed note: its text (what is signed) and its signature lines.
export type NoteSig = { name: string; hash: number; sig: Uint8Array };
export type Note = { text: string; sigs: NoteSig[] };

export function parseNote(msg: string): Note {
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note (no signature block)");
  const text = msg.slice(0, split + 1);
  const block = msg.slice(split + 2);
  if (!block.endsWith("\n")) throw new Error("the checkpoint's signature block does not end its last line");
  const sigs: NoteSig[] = [];
  for (const line of block.slice(0, -1).split("\n")) {
    if (!line.startsWith("\u2014 ")) throw new Error("malformed signature line in the checkpoint");
    const [name, b64] = line.slice(2).split(" ");
    let sig: Uint8Array;
    try { sig = b64decode(b64 || ""); } catch { throw new Error("malformed signature in the checkpoint"); }
    if (!name || sig.length < 5) throw new Error("malformed signature line in the checkpoint");
    sigs.push({ name, hash: new DataView(sig.buffer, sig.byteOffset).getUint32(0), sig: sig.subarray(4) });
  }
  return { text, sigs };
}

// parseCheckpoint reads a checkpoint body: origin, tree size, root hash.
export function parseCheckpoint(text: string): { origin: string; size: number; root: Uint8Array; rootB64: string } {
  const lines = text.split("\n");
  if (lines.length < 4 || lines[0] === "") throw new Error("malformed checkpoint: it needs origin, size and hash lines");
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1]) || !Number.isSafeInteger(Number(lines[1]))) throw new Error(`malformed checkpoint: bad tree size ${JSON.stringify(lines[1])}`);
  let root: Uint8Array;
  try { root = b64decode(lines[2]); } catch { throw new Error("malformed checkpoint: bad root hash"); }
  if (root.length !== 32) throw new Error("malformed checkpoint: bad root hash");
  return { origin: lines[0], size: Number(lines[1]), root, rootB64: lines[2] };
}

// A verifier key: NAME+HASH+BASE64(0x01 || Ed25519 public key).
export type VerifierKey = { name: string; hash: number; alg: number; pub: Uint8Array };

export async function parseVerifierKey(vkey: string): Promise<VerifierKey> {
  // NAME+HASH+KEY, cut at the first two '+' (base64 holds '+' too).
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(vkey.trim());
  if (!m) throw new Error("the audit key is not a signed-note verifier key");
  const [, name, hash16, b64] = m;
  let key: Uint8Array;
  try { key = b64decode(b64); } catch { throw new Error("the audit key is not a signed-note verifier key"); }
  if (key.length !== 33 || key[0] !== 1) throw new Error("the audit key is not an Ed25519 signed-note key");
  const h = await sha256(utf8.encode(name + "\n"), key);
  const hash = new DataView(h.buffer).getUint32(0);
  if (hash !== parseInt(hash16, 16)) throw new Error("the audit key's hash does not match its name and key");
  return { name, hash, alg: key[0], pub: key.subarray(1) };
}

// ed25519Verify checks a signature with WebCrypto; "unsupported" when
// this browser has no Ed25519.
export async function ed25519Verify(pub: Uint8Array, sig: Uint8Array, data: Uint8Array): Promise<boolean | "unsupported"> {
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey("raw", pub as BufferSource, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    if (e instanceof DOMException && (e.name === "NotSupportedError" || e.name === "SyntaxError")) return "unsupported";
    throw e;
  }
  return crypto.subtle.verify({ name: "Ed25519" }, key, sig as BufferSource, data as BufferSource);
}

// OpenedCheckpoint is what openCheckpoint found: the tree and whether
// the signature was checked here.
export type OpenedCheckpoint = {
  origin: string; size: number; root: Uint8Array; rootB64: string;
  signature: "verified" | "unsupported";
};

// openCheckpoint is audit.OpenCheckpoint: the key must be the log's
// (named by the expected origin, never taken from the checkpoint), the
// note must carry its valid signature, and the checkpoint must be for
// the same origin. It throws, saying what is wrong, otherwise.
export async function openCheckpoint(signed: string, vkey: string, origin: string): Promise<OpenedCheckpoint> {
  const key = await parseVerifierKey(vkey);
  if (key.name !== origin) throw new Error(`the key is for ${JSON.stringify(key.name)}, expected ${JSON.stringify(origin)} (another log's key)`);
  const note = parseNote(signed);
  const sig = note.sigs.find((s) => s.name === key.name && s.hash === key.hash);
  if (!sig) throw new Error(`the checkpoint carries no signature by ${key.name}`);
  const ok = await ed25519Verify(key.pub, sig.sig, utf8.encode(note.text));
  if (ok === false) throw new Error(`the checkpoint's signature by ${key.name} is not valid`);
  const cp = parseCheckpoint(note.text);
  if (cp.origin !== origin) throw new Error(`the checkpoint is for ${JSON.stringify(cp.origin)}, expected ${JSON.stringify(origin)}`);
  return { ...cp, signature: ok === true ? "verified" : "unsupported" };
}
