import { HomeScreen } from "@/components/HomeScreen";

export default function Page() {
  return <HomeScreen />;
}
