"use client";
import { useSearchParams } from "next/navigation";
import { ConversationView } from "./ConversationView";
import { Inbox } from "./Inbox";
import { RequireSession } from "./RequireSession";

/** /messages (inbox) and /messages?c=<id> (one conversation). */
export function MessagesScreen() {
  const c = useSearchParams().get("c");
  return <RequireSession>{c ? <ConversationView key={c} id={c} /> : <Inbox />}</RequireSession>;
}
