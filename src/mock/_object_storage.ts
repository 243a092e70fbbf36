/**
 * The object storage behind `direct_download` (PROTOCOL.md §3.9, §12.6, §13 item 17): GitLab
 * answers a download with a 302 to a pre-signed S3 URL on another origin, and that origin
 * serves the archive without any GitLab token, answering errors the way S3 does (XML bodies,
 * 403 for a bad or expired signature, 404 `NoSuchKey`, 405 for other methods).
 *
 * @module
 */

import type { Clock } from "../clock.ts";
import type { Archive } from "./_job_state.ts";
import { randomHex, statusText } from "./_util.ts";

interface SignedUrl {
  jobId: number;
  expiresAt: number;
}

/** How long a pre-signed URL is valid (`X-Amz-Expires`). */
const EXPIRES_SECONDS = 3600;

/** Signed URLs handed out, and the archives they reach. */
export class ObjectStorage {
  #clock: Clock;
  #archive: (jobId: number) => Archive | undefined;
  #signed = new Map<string, SignedUrl>();

  /**
   * @param clock Time of signing and of expiry checks.
   * @param archive The archive of a job, if it still has one.
   */
  constructor(clock: Clock, archive: (jobId: number) => Archive | undefined) {
    this.#clock = clock;
    this.#archive = archive;
  }

  /** A pre-signed URL on `objectsOrigin` for a job's archive, valid for an hour. */
  presign(objectsOrigin: string, jobId: number, filename: string): string {
    const signature = randomHex(64);
    const now = this.#clock.now();
    this.#signed.set(signature, { jobId, expiresAt: now + EXPIRES_SECONDS * 1000 });
    const query = new URLSearchParams({
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Credential": `MOCKACCESSKEY/${amzDate(now).slice(0, 8)}/us-east-1/s3/aws4_request`,
      "X-Amz-Date": amzDate(now),
      "X-Amz-Expires": String(EXPIRES_SECONDS),
      "X-Amz-SignedHeaders": "host",
      "X-Amz-Signature": signature,
    });
    return `${objectsOrigin}/objects/artifacts/${jobId}/${encodeURIComponent(filename)}?${query}`;
  }

  /** Serves `GET`/`HEAD /objects/artifacts/:id/:filename?X-Amz-Signature=…`. */
  serve(request: Request, url: URL, id: number | undefined): Response {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return s3Error(405, "MethodNotAllowed", "The specified method is not allowed");
    }
    const signature = url.searchParams.get("X-Amz-Signature") ?? "";
    const signed = this.#signed.get(signature);
    if (!signed || signed.jobId !== id) {
      return s3Error(403, "SignatureDoesNotMatch", "The request signature does not match");
    }
    if (this.#clock.now() > signed.expiresAt) {
      return s3Error(403, "AccessDenied", "Request has expired");
    }
    const archive = this.#archive(signed.jobId);
    if (!archive) return s3Error(404, "NoSuchKey", "The specified key does not exist");
    return new Response(request.method === "HEAD" ? null : archive.data.slice(), {
      status: 200,
      statusText: "OK",
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(archive.data.length),
      },
    });
  }
}

function s3Error(status: number, code: string, message: string): Response {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message></Error>`;
  return new Response(xml, {
    status,
    statusText: statusText(status),
    headers: { "content-type": "application/xml" },
  });
}

function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}
