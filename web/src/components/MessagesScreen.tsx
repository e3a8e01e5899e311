"use client";
import { useSearchParams } from "next/navigation";
import { ConversationView } from "./ConversationView";
import { Inbox } from "./Inbox";
import { NewGroup } from "./NewGroup";
import { RequireSession } from "./RequireSession";

/** /messages (inbox), /messages?c=<id> (one conversation), /messages?new=group (start a group). */
export function MessagesScreen() {
  const params = useSearchParams();
  const c = params.get("c");
  const creating = params.get("new") === "group";
  return <RequireSession>{c ? <ConversationView key={c} id={c} /> : creating ? <NewGroup /> : <Inbox />}</RequireSession>;
}
