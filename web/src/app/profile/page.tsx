import type { Metadata } from "next";
import { Suspense } from "react";
import { ProfileScreen } from "@/components/ProfileScreen";
import { LoadingState } from "@/components/StatusViews";

export const metadata: Metadata = { title: "Profile" };

export default function Page() {
  return (
    <Suspense fallback={<LoadingState />}>
      <ProfileScreen />
    </Suspense>
  );
}
