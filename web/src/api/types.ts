// Names for generated types, derived from the operations' answers (so they survive
// schema renames in gen/socialmesh/openapi.json). No hand-written shapes.
import type { paths } from "./schema";

type Json<R> = R extends { content: { "application/json": infer T } } ? T : never;
/** The 200 answer of an operation. */
export type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { responses: { 200: infer R } }
  ? Json<R>
  : never;
/** The JSON body an operation takes. */
export type Body<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  requestBody?: { content: { "application/json": infer B } };
}
  ? B
  : never;
type Item<A> = NonNullable<A> extends readonly (infer T)[] ? T : never;

export type User = Ok<"/v1/users/{userId}", "get">;
export type Post = Ok<"/v1/posts/{postId}", "get">;
export type PostInput = Body<"/v1/posts", "post">;
export type Comment = Item<Ok<"/v1/posts/{postId}/comments", "get">["comments"]>;
export type Facet = Item<Post["facets"]>;
export type Visibility = NonNullable<Post["visibility"]>;
export type FeedPage = Ok<"/v1/feed", "get">;
export type FeedItem = Item<FeedPage["items"]>;
export type FeedKind = NonNullable<FeedPage["kind"]>;
export type Impression = Item<Body<"/v1/feed:recordImpressions", "post">["impressions"]>;
export type Surface = NonNullable<Impression["surface"]>;
export type FeedbackKind = NonNullable<Body<"/v1/feed:submitFeedback", "post">["kind"]>;
export type SuggestedUser = Item<Ok<"/v1/users:suggested", "get">["users"]>;
export type TrendingTag = Item<Ok<"/v1/trends/tags", "get">["tags"]>;
export type TagCount = Item<Ok<"/v1/tags:search", "get">["tags"]>;
export type Media = Ok<"/v1/media/{mediaId}", "get">;
export type MediaVariant = Item<Media["variants"]>;
export type LoginResponse = Ok<"/v1/auth:login", "post">;
export type ChatEvent = Item<Ok<"/v1/events:sync", "get">["events"]>;
export type StreamControl = NonNullable<ChatEvent["control"]>;
export type Notification = Item<Ok<"/v1/notifications", "get">["notifications"]>;
export type NotificationType = NonNullable<Notification["type"]>;
export type ConversationPage = Ok<"/v1/conversations", "get">;
export type Conversation = Item<ConversationPage["conversations"]>;
export type ConversationState = NonNullable<Conversation["state"]>;
export type MessagePage = Ok<"/v1/conversations/{conversationId}/messages", "get">;
export type Message = Item<MessagePage["messages"]>;
export type ReactionCount = Item<Message["reactions"]>;
export type UnreadCounts = Ok<"/v1/unreadCounts", "get">;
export type FollowEdge = Item<Ok<"/v1/users/{userId}/followers", "get">["followers"]>;
export type FollowRequest = Item<Ok<"/v1/followRequests", "get">["followRequests"]>;
export type Relationship = Ok<"/v1/users/{userId}/relationship", "get">;
export type Session = Item<Ok<"/v1/users/{userId}/sessions", "get">["sessions"]>;
