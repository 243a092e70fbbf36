/**
 * HTTP reason phrases for the log lines of artifact transfers ("201 Created"), like the
 * official runner prints them.
 *
 * @module
 */

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  201: "Created",
  307: "Temporary Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Request Entity Too Large",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** `201 Created`, or just the number for a status without a known phrase. */
export function statusLine(status: number): string {
  const text = STATUS_TEXT[status];
  return text ? `${status} ${text}` : String(status);
}
