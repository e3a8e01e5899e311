import type { Metadata } from "next";
import { Suspense } from "react";
import { PeopleScreen } from "@/components/PeopleScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "People" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <PeopleScreen />
    </Suspense>
  );
}
