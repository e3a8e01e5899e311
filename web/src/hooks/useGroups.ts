"use client";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { ApiError, humanMessage } from "@/api/errors";
import type { Conversation } from "@/api/types";
import { newId } from "@/lib/format";

export type MemberRole = NonNullable<NonNullable<Conversation["members"]>[number]["role"]>;

const RANK: Record<string, number> = { MEMBER_ROLE_OWNER: 3, MEMBER_ROLE_ADMIN: 2, MEMBER_ROLE_MEMBER: 1 };

/** Owners and admins rename the group and add people (the API's rule, so the buttons match it). */
export function canManage(myRole: MemberRole | string | undefined): boolean {
  return (RANK[myRole ?? ""] ?? 0) >= 2;
}

/** Owners remove anyone but themselves; admins remove plain members; nobody removes the owner. */
export function canRemove(myRole: MemberRole | string | undefined, theirRole: MemberRole | string | undefined): boolean {
  if (!canManage(myRole)) return false;
  if (theirRole === "MEMBER_ROLE_OWNER") return false;
  return myRole === "MEMBER_ROLE_OWNER" || theirRole !== "MEMBER_ROLE_ADMIN";
}

export function roleLabel(role: string | undefined): string {
  return role === "MEMBER_ROLE_OWNER" ? "Owner" : role === "MEMBER_ROLE_ADMIN" ? "Admin" : "Member";
}

// The chat service's reasons for refusing a group change, said the way a person would.
const GROUP_REASONS: Record<string, string> = {
  NOT_ADMIN: "Only the group's owner and admins can do that (and nobody can remove the owner).",
  NOT_SUPPORTED: "That only works in group conversations.",
  LIMIT_REACHED: "This group is full: a group has at most 256 people.",
  BLOCKED: "You can't add someone who has blocked you or whom you have blocked.",
  BLOCKING: "You can't add someone who has blocked you or whom you have blocked.",
  NOT_FOUND: "That person or conversation no longer exists.",
  PERMISSION_DENIED: "You're not allowed to change this group.",
};

/** A sentence for a failed group action; falls back to the app's general messages. */
export function groupErrorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    const known = GROUP_REASONS[err.reason];
    if (known) return known;
  }
  return humanMessage(err);
}

/** Keeps the conversation the API answered with, and has the inbox refetch. */
function useStore() {
  const qc = useQueryClient();
  return (c: Conversation | null, id: string) => {
    if (c?.conversationId) qc.setQueryData(keys.conversation(id), c);
    else void qc.invalidateQueries({ queryKey: keys.conversation(id) });
    void qc.invalidateQueries({ queryKey: ["conversations"] });
  };
}

export function useCreateGroup() {
  const store = useStore();
  return useMutation({
    mutationFn: ({ title, memberIds, requestId }: { title: string; memberIds: string[]; requestId: string }) =>
      unwrap(api.POST("/v1/conversations", { params: { query: { requestId } }, body: { type: "CONVERSATION_TYPE_GROUP", title, memberIds } })),
    onSuccess: (c) => store(c, c.conversationId),
  });
}

export function useRenameGroup(id: string) {
  const store = useStore();
  return useMutation({
    mutationFn: (title: string) =>
      unwrap(api.PATCH("/v1/conversations/{conversationId}", { params: { path: { conversationId: id }, query: { updateMask: "title" } }, body: { title, memberIds: [] } })),
    onSuccess: (c) => store(c, id),
  });
}

export function useAddMembers(id: string) {
  const store = useStore();
  return useMutation({
    mutationFn: (userIds: string[]) => unwrap(api.POST("/v1/conversations/{conversationId}:addMembers", { params: { path: { conversationId: id } }, body: { userIds } })),
    onSuccess: (c) => store(c, id),
  });
}

export function useRemoveMember(id: string) {
  const store = useStore();
  return useMutation({
    mutationFn: (userId: string) => unwrap(api.POST("/v1/conversations/{conversationId}:removeMember", { params: { path: { conversationId: id } }, body: { userId } })),
    onSuccess: (c) => store(c, id),
  });
}

export function useLeaveGroup(id: string) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: () => unwrap(api.POST("/v1/conversations/{conversationId}:leave", { params: { path: { conversationId: id } } })),
    onSuccess: () => {
      qc.removeQueries({ queryKey: keys.conversation(id) });
      qc.removeQueries({ queryKey: keys.messages(id) });
      void qc.invalidateQueries({ queryKey: ["conversations"] });
      void qc.invalidateQueries({ queryKey: keys.unread });
    },
  });
}

export const groupRequestId = newId;
