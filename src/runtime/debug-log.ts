/**
 * The debug log of one run: passes bytes on, and at the end adds a newline
 * if the last byte written was not one (spec abi.md §7.5: "ping" → "ping\n").
 */
export class DebugLog {
  private last = 0x0a;
  constructor(private readonly sink: (data: Uint8Array) => void) {}

  write(data: Uint8Array): void {
    if (data.length === 0) return;
    this.last = data[data.length - 1]!;
    this.sink(data);
  }

  end(): void {
    if (this.last !== 0x0a) this.write(Uint8Array.of(0x0a));
  }
}
