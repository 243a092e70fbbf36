// Peak RSS of this process over a piece of work, for the memory tests' child processes.

/** The peak RSS since the last reset, from /proc (Linux), else undefined. */
function vmHwm(): number | undefined {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `work` and measures how far RSS grew above where it was before (after a GC when exposed):
 * exact from VmHWM where /proc lets it be reset, else sampled every 5 ms.
 */
export async function peakRssGrowth<T>(
  work: () => Promise<T>,
): Promise<{ result: T; growth: number; exact: boolean }> {
  (globalThis as { gc?: () => void }).gc?.();
  const before = Deno.memoryUsage().rss;
  let exact = false;
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
    exact = true;
  } catch {
    // no VmHWM reset: sampling only
  }
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }, 5);
  try {
    const result = await work();
    peak = Math.max(peak, Deno.memoryUsage().rss, exact ? vmHwm() ?? 0 : 0);
    return { result, growth: peak - before, exact };
  } finally {
    clearInterval(timer);
  }
}
