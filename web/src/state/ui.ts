import { create } from "zustand";

interface TypingState {
  /** conversationId -> userId -> expiry (ms since epoch) */
  typing: Record<string, Record<string, number>>;
  setTyping: (conversationId: string, userId: string, until: number | null) => void;
}

export const useTyping = create<TypingState>((set) => ({
  typing: {},
  setTyping: (conversationId, userId, until) =>
    set((s) => {
      const conv = { ...(s.typing[conversationId] ?? {}) };
      if (until === null) delete conv[userId];
      else conv[userId] = until;
      return { typing: { ...s.typing, [conversationId]: conv } };
    }),
}));

interface StreamState {
  status: "connecting" | "open" | "waiting" | "stopped";
  setStatus: (s: StreamState["status"]) => void;
}

export const useStreamStatus = create<StreamState>((set) => ({
  status: "stopped",
  setStatus: (status) => set({ status }),
}));
