/**
 * Splitting a text stream into lines, with the semantics of `TextLineStream` from `@std/streams`
 * (which cannot be used here: no JSR on this project's machines).
 *
 * @module
 */

/** Options of {@linkcode TextLineStream}. */
export interface TextLineStreamOptions {
  /**
   * Also end a line at a lone `\r` (not followed by `\n`), as a terminal would for progress bars.
   * Default `false`: only `\n` and `\r\n` end lines, and a lone `\r` stays in the line.
   */
  allowCR?: boolean;
}

/**
 * Splits a stream of strings into lines: at `\n` and at `\r\n` (the `\r` is removed), and, with
 * `allowCR`, at a lone `\r` too. Empty lines are kept; a last line without a line break is emitted
 * when the input ends; a line break at the very end does not make an extra empty line.
 *
 * @example Reading lines
 * ```ts
 * const lines = ReadableStream.from(["one\ntw", "o\r\n\nthree"]).pipeThrough(new TextLineStream());
 * console.log(await Array.fromAsync(lines)); // ["one", "two", "", "three"]
 * ```
 *
 * @example Progress output with carriage returns
 * ```ts
 * const lines = ReadableStream.from(["10%\r50%\r", "100%\n"])
 *   .pipeThrough(new TextLineStream({ allowCR: true }));
 * console.log(await Array.fromAsync(lines)); // ["10%", "50%", "100%"]
 * ```
 */
export class TextLineStream extends TransformStream<string, string> {
  #rest = "";

  /**
   * Creates the stream.
   *
   * @param options Whether a lone `\r` ends a line too.
   */
  constructor(options: TextLineStreamOptions = {}) {
    const allowCR = options.allowCR === true;
    super({
      transform: (chunk, controller) => {
        const text = this.#rest === "" ? chunk : this.#rest + chunk;
        let start = 0;
        let lf = text.indexOf("\n");
        let cr = allowCR ? text.indexOf("\r") : -1;
        while (true) {
          // A lone \r (one not directly before the \n) ends a line, unless it is the last
          // character seen: a \n may follow in the next chunk.
          if (cr !== -1 && (lf === -1 || cr < lf - 1)) {
            if (cr === text.length - 1) break;
            controller.enqueue(text.slice(start, cr));
            start = cr + 1;
            cr = text.indexOf("\r", start);
            continue;
          }
          if (lf === -1) break;
          const lineEnd = lf > start && text.charCodeAt(lf - 1) === 13 ? lf - 1 : lf;
          controller.enqueue(text.slice(start, lineEnd));
          start = lf + 1;
          lf = text.indexOf("\n", start);
          if (cr !== -1 && cr < start) cr = text.indexOf("\r", start);
        }
        this.#rest = text.slice(start);
      },
      flush: (controller) => {
        const rest = this.#rest;
        this.#rest = "";
        if (rest === "") return;
        controller.enqueue(allowCR && rest.endsWith("\r") ? rest.slice(0, -1) : rest);
      },
    });
  }
}
