import { create } from "zustand";
import type { User } from "@/api/types";

export type SessionStatus = "restoring" | "signedIn" | "signedOut";

interface SessionState {
  status: SessionStatus;
  user: User | null;
  userId: string | null;
  setSignedIn: (user: User | null, userId: string | null) => void;
  setSignedOut: () => void;
  setUser: (user: User) => void;
}

/** Who is signed in (the token itself stays in src/api/client.ts's memory). */
export const useSession = create<SessionState>((set) => ({
  status: "restoring",
  user: null,
  userId: null,
  setSignedIn: (user, userId) => set({ status: "signedIn", user, userId: userId ?? user?.userId ?? null }),
  setSignedOut: () => set({ status: "signedOut", user: null, userId: null }),
  setUser: (user) => set({ user, userId: user.userId ?? null }),
}));
