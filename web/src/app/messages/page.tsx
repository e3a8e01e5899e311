import type { Metadata } from "next";
import { Suspense } from "react";
import { MessagesScreen } from "@/components/MessagesScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "Messages" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <MessagesScreen />
    </Suspense>
  );
}
