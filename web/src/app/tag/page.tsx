import type { Metadata } from "next";
import { Suspense } from "react";
import { TagScreen } from "@/components/TagScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "Hashtag" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <TagScreen />
    </Suspense>
  );
}
