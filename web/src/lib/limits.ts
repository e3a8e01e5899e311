// The API's own limits, as its OpenAPI document states them (gen/socialmesh/openapi.json,
// from the protos); tests/limits.test.ts reads the document and fails when they drift.

/** PostInput.text: "Up to 5,000 characters". */
export const POST_TEXT_MAX = 5000;
/** PostInput.mediaIds: "Up to 4 media attachments". */
export const POST_MEDIA_MAX = 4;
/** MessageInput.text: "1 to 4,000 characters". */
export const MESSAGE_TEXT_MAX = 4000;
/** MessageInput.mediaIds: "Attached media (up to 4)". */
export const MESSAGE_MEDIA_MAX = 4;
/** ConversationInput.title: "at most 100 characters". */
export const GROUP_TITLE_MAX = 100;

/** How close to a limit the counter appears: people need not see it for a short post. */
export const COUNTER_FROM = 0.9;

/**
 * The counter under a text box: nothing while far from the limit, then how many
 * characters are left (or how many too many). Counts code points, as the API does.
 */
export function remainingText(text: string, max: number): { show: boolean; left: number; label: string; over: boolean } {
  const used = [...text].length;
  const left = max - used;
  const over = left < 0;
  const label = over ? `${-left} ${-left === 1 ? "character" : "characters"} over the limit` : `${left} ${left === 1 ? "character" : "characters"} left`;
  return { show: used >= Math.floor(max * COUNTER_FROM), left, label, over };
}
