/**
 * What the metrics listener twins share.
 *
 * @module
 */

/** A `Request → Response` handler. */
export type MetricsHandler = (request: Request) => Promise<Response>;

/** Where to listen. */
export interface ListenOptions {
  hostname: string;
  port: number;
}

/** A listening server. */
export interface Listening {
  /** The bound port. */
  port: number;
  /** Stops listening; resolves once the open connections are closed. */
  close(): Promise<void>;
}
