import type { Metadata } from "next";
import { EditProfileScreen } from "@/components/EditProfileScreen";

export const metadata: Metadata = { title: "Edit profile" };

export default function Page() {
  return <EditProfileScreen />;
}
