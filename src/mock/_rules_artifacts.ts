/**
 * Artifacts: `POST /jobs/:id/artifacts` (PROTOCOL.md §3.8, Workhorse's authorization §3.7) and
 * `GET`/`HEAD /jobs/:id/artifacts` (§3.9; edge cases §13 items 16 and 17).
 *
 * Upload, as Workhorse then Rails check it: the job token from headers or query, before the
 * body is read; a `multipart/form-data` body (400 `file is missing` otherwise), streamed and
 * never held whole (413 past `maxArtifactSize`, or past 1 MiB of text fields); exactly one
 * file part, named `file`; `artifact_type`/`artifact_format` from a text field or the query
 * (defaults `archive`/`zip`, other values 400); the same type again is 201 when identical, 400
 * when different. A proxy's 307 (`uploadRedirect`) is `_redirects.ts`'s.
 *
 * Download: allowed with the job's own token, or with the token of a running job that depends
 * on it (403 otherwise); 404 without an archive; 302 to the object storage
 * (`_object_storage.ts`) for `direct_download=true` when `downloadRedirect` is on.
 *
 * @module
 */

import { ARTIFACT_FORMATS, ARTIFACT_TYPE_FORMATS } from "./_constants.ts";
import type { JobState } from "./_job_state.ts";
import { ByteCollector, multipartBoundary, MultipartError, readMultipart } from "./_multipart.ts";
import { authJob, jobToken } from "./_rails.ts";
import { uploadRedirect } from "./_redirects.ts";
import type { RouteCall } from "./_router.ts";
import { coerceBoolean, concatBytes, errorResponse, jsonResponse, textResponse } from "./_util.ts";

/** Largest total of an upload's text fields (Workhorse passes them to Rails in memory). */
const MAX_UPLOAD_FIELDS_SIZE = 1024 * 1024;

/** The file and text fields of an upload body. */
interface Upload {
  file: { filename: string; contentType: string; bytes: ByteCollector };
  fields: Map<string, string>;
}

/** `POST /jobs/:id/artifacts`. */
export async function uploadArtifact(call: RouteCall): Promise<Response> {
  const { store, request, url, jobId } = call;
  const redirected = uploadRedirect(store.config.uploadRedirect, request, url, call.ctx);
  if (redirected) return await redirected;
  // Workhorse authorizes with the request's headers and query only (before reading the body).
  const auth = authJob(store, jobId!, jobToken(request, url), "upload");
  if (auth instanceof Response) return await refuse(request, auth);
  const contentType = request.headers.get("content-type") ?? "";
  if (!contentType.toLowerCase().startsWith("multipart/form-data")) {
    return await refuse(request, jsonResponse(400, { error: "file is missing" }));
  }
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > store.config.maxArtifactSize + 1024 * 1024) {
    return await refuse(request, errorResponse(413, "file size has reached maximum size limit"));
  }
  const boundary = multipartBoundary(contentType);
  if (boundary === undefined) {
    return await refuse(request, errorResponse(400, "400 Bad Request - invalid multipart body"));
  }
  const upload = await readUpload(request.body, boundary, store.config.maxArtifactSize);
  if (upload instanceof Response) return upload;
  return storeArtifact(auth, upload, url);
}

/** Answers without reading the body (it is cancelled). */
async function refuse(request: Request, response: Response): Promise<Response> {
  await request.body?.cancel().catch(() => {});
  return response;
}

/**
 * Reads an upload body as it arrives (M13): the file's bytes are collected and the body is
 * never held whole; past `maxBytes` the answer is 413 at once and the rest of the body is
 * cancelled (leaving the loop cancels it), as Workhorse does.
 */
async function readUpload(
  body: ReadableStream<Uint8Array> | null,
  boundary: string,
  maxBytes: number,
): Promise<Upload | Response> {
  let file: Upload["file"] | undefined;
  let field: { name: string; chunks: Uint8Array[]; size: number } | undefined;
  let fieldBytes = 0;
  const fields = new Map<string, string>();
  try {
    let inFile = false;
    for await (const event of readMultipart(body, boundary)) {
      if (event.type === "part") {
        const { name, filename } = event.part;
        inFile = filename !== undefined;
        field = undefined;
        if (filename !== undefined) {
          // Workhorse accepts exactly one file, in the field "file".
          if (name !== "file") {
            return errorResponse(400, `400 Bad Request - unexpected file "${name ?? ""}"`);
          }
          if (file) {
            return errorResponse(400, "400 Bad Request - upload request contains more than 1 file");
          }
          file = {
            filename,
            contentType: event.part.contentType,
            bytes: new ByteCollector(maxBytes),
          };
        } else if (name !== undefined) {
          field = { name, chunks: [], size: 0 };
        }
      } else if (event.type === "data") {
        if (inFile) {
          if (file!.bytes.length + event.bytes.length > maxBytes) {
            return errorResponse(413, "file size has reached maximum size limit");
          }
          file!.bytes.push(event.bytes);
        } else if (field) {
          fieldBytes += event.bytes.length;
          if (fieldBytes > MAX_UPLOAD_FIELDS_SIZE) {
            return errorResponse(413, "413 Request Entity Too Large");
          }
          field.chunks.push(event.bytes.slice());
          field.size += event.bytes.length;
        }
      } else {
        if (field) {
          fields.set(field.name, new TextDecoder().decode(concatBytes(field.chunks, field.size)));
        }
        field = undefined;
        inFile = false;
      }
    }
  } catch (error) {
    if (error instanceof MultipartError) {
      return errorResponse(400, "400 Bad Request - invalid multipart body");
    }
    throw error;
  }
  if (!file) return jsonResponse(400, { error: "file is missing" });
  return { file, fields };
}

/** Rails' side of an upload: the type and format params, then the stored artifact. */
function storeArtifact(job: JobState, upload: Upload, url: URL): Response {
  const { file, fields } = upload;
  const pick = (name: string, fallback: string) => {
    const field = fields.get(name);
    if (field !== undefined) return { value: field, from: "field" as const };
    const query = url.searchParams.get(name);
    if (query !== null) return { value: query, from: "query" as const };
    return { value: fallback, from: "default" as const };
  };
  const type = pick("artifact_type", "archive");
  const format = pick("artifact_format", "zip");
  if (!Object.hasOwn(ARTIFACT_TYPE_FORMATS, type.value)) {
    return jsonResponse(400, { error: "artifact_type does not have a valid value" });
  }
  if (!ARTIFACT_FORMATS.includes(format.value)) {
    return jsonResponse(400, { error: "artifact_format does not have a valid value" });
  }
  const data = file.bytes.bytes();
  const existing = job.artifacts.find((a) => a.type === type.value);
  if (existing) {
    const same = existing.data.length === data.length &&
      existing.data.every((b, i) => b === data[i]);
    if (!same) return errorResponse(400, "another artifact of the same type already exists");
    return textResponse(201, "201");
  }
  const expireIn = fields.get("expire_in") ?? url.searchParams.get("expire_in") ?? undefined;
  job.artifacts.push({
    filename: file.filename,
    type: type.value,
    format: format.value,
    ...(expireIn !== undefined ? { expireIn } : {}),
    contentType: file.contentType,
    data,
    paramsFrom: { type: type.from, format: format.from },
  });
  return textResponse(201, "201");
}

/** `GET`/`HEAD /jobs/:id/artifacts`. */
export function downloadArtifact({ store, request, url, jobId, ctx }: RouteCall): Response {
  const token = jobToken(request, url);
  const direct = coerceBoolean(url.searchParams.get("direct_download"));
  if (direct === null) return jsonResponse(400, { error: "direct_download is invalid" });
  const target = store.byId.get(jobId!);
  const holder = token ? store.byToken.get(token) : undefined;
  const allowed = target !== undefined && holder !== undefined &&
    (holder === target ||
      (holder.executing && holder.dependencies.some((d) => d.id === target.id)));
  if (!allowed) return errorResponse(403, "403 Forbidden");
  const archive = target.archive;
  if (!archive) return errorResponse(404, "404 Not Found");
  if (direct && store.config.downloadRedirect) {
    return new Response(null, {
      status: 302,
      statusText: "Found",
      headers: { Location: store.objects.presign(ctx.objectsOrigin, target.id, archive.filename) },
    });
  }
  return new Response(request.method === "HEAD" ? null : archive.data.slice(), {
    status: 200,
    statusText: "OK",
    headers: {
      "content-type": "application/octet-stream",
      "content-disposition": `attachment; filename="${archive.filename}"`,
      "content-length": String(archive.data.length),
    },
  });
}
