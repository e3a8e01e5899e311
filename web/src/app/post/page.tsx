import type { Metadata } from "next";
import { Suspense } from "react";
import { PostScreen } from "@/components/PostScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "Post" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <PostScreen />
    </Suspense>
  );
}
