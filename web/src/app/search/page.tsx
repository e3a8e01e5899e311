import type { Metadata } from "next";
import { Suspense } from "react";
import { SearchScreen } from "@/components/SearchScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "Search" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <SearchScreen />
    </Suspense>
  );
}
