import type { Metadata } from "next";
import { FollowRequestsScreen } from "@/components/FollowRequestsScreen";

export const metadata: Metadata = { title: "Follow requests" };

export default function Page() {
  return <FollowRequestsScreen />;
}
