// Types openapi-typescript generates from the edge's /openapi.json, used the way a client
// would; tests/test_generated_clients.py writes them to ./schema.d.ts beside this file and
// runs `tsc --strict --noEmit`. Any error fails the test.
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
type Post = Schemas["Post"];

// Always-printed fields are required: no `| undefined` on a response's counts or ids.
export function likes(post: Post): number {
  const count: string = post.likeCount; // int64 is a decimal string in proto3 JSON
  return Number(count);
}

export function firstAuthor(page: Schemas["GetHomeFeedResponse"]): string | null {
  const author: Schemas["User"] | undefined = page.authors[0];
  return author === undefined ? null : author.handle;
}

// Enums are open: a known name or any newer one.
export function reasonLabel(item: Schemas["FeedItem"]): string {
  const known: Schemas["FeedReason"] = "FEED_REASON_FOLLOWING";
  return item.reason === known ? "from someone you follow" : item.reason;
}

// Request bodies: the request form of a resource, without output-only fields.
export const draft: Schemas["PostInput"] = { text: "hello #world", mediaIds: ["1"] };
// @ts-expect-error likeCount is output-only: not part of a request body
export const forged: Schemas["PostInput"] = { text: "x", likeCount: "999" };

type LoginBody = paths["/v1/auth:login"]["post"]["requestBody"]["content"]["application/json"];
export const credentials: LoginBody = { handle: "alice", password: "correct horse battery" };
type Tokens = paths["/v1/auth:login"]["post"]["responses"][200]["content"]["application/json"];
export const bearer = (t: Tokens): string => `Bearer ${t.accessToken}`;

// Path parameters carry the JSON (camelCase) name of the field.
export const path: paths["/v1/users/{userId}"]["get"]["parameters"]["path"] = { userId: "42" };

// Errors are google.rpc.Status with typed details.
type ErrorBody = paths["/v1/posts"]["post"]["responses"]["default"]["content"]["application/json"];
export function reasons(error: ErrorBody): string[] {
  return (error.details ?? []).flatMap((d) => ("reason" in d && typeof d.reason === "string" ? [d.reason] : []));
}

// The upload takes raw bytes.
type Upload = paths["/v1/media:upload"]["post"]["requestBody"]["content"]["application/octet-stream"];
export const upload: Upload = "<bytes>";
