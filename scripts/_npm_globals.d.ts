// Build-only declarations for tsc (tsconfig.npm.json), never shipped: the DOM type aliases that
// the library's source names and that @types/node 20 does not declare as globals. Each one is
// derived from Node's own fetch/stream types, so it is the type Node's fetch really accepts.
// (A script file: for tsc these are globals; Deno sees a module and its own DOM types win.)

type BodyInit = NonNullable<RequestInit["body"]>;
type HeadersInit = NonNullable<RequestInit["headers"]>;
type RequestInfo = Request | string;
type RequestRedirect = NonNullable<RequestInit["redirect"]>;
type ReadableStreamReadResult<T> = import("node:stream/web").ReadableStreamReadResult<T>;
