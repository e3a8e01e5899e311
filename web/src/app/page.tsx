"use client";
import dynamic from "next/dynamic";
import { LoadingState } from "@/components/StatusViews";

// Home shows nothing but "restoring" until the session is back (RequireSession), so its
// code (composer, feed, cards) is not in the first-load JavaScript: it is fetched as this
// module runs, beside the session refresh the providers started, not after either.
const loadHome = () => import("@/components/HomeScreen").then((m) => m.HomeScreen);
if (typeof window !== "undefined") void loadHome();

const HomeScreen = dynamic(loadHome, { ssr: false, loading: () => <LoadingState label="Restoring your session" /> });

export default function Page() {
  return <HomeScreen />;
}
