"use client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { restoreSession } from "@/api/session";
import { ApiError } from "@/api/errors";
import dynamic from "next/dynamic";

// Neither draws anything: their code loads after the first paint, in chunks of their own.
const LiveEvents = dynamic(() => import("@/components/LiveEvents").then((m) => m.LiveEvents), { ssr: false });
const ImpressionFlusher = dynamic(() => import("@/components/ImpressionFlusher").then((m) => m.ImpressionFlusher), { ssr: false });

function makeClient() {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 30_000,
        refetchOnWindowFocus: false,
        retry: (n, err) => !(err instanceof ApiError && err.status < 500 && err.status !== 429) && n < 2,
      },
      mutations: { retry: false },
    },
  });
}

// In the browser, the session refresh starts as soon as this module runs, not after hydration.
if (typeof window !== "undefined") void restoreSession();

export function Providers({ children }: { children: React.ReactNode }) {
  const [client] = useState(makeClient);
  useEffect(() => {
    void restoreSession();
  }, []);
  return (
    <QueryClientProvider client={client}>
      <LiveEvents />
      <ImpressionFlusher />
      {children}
    </QueryClientProvider>
  );
}
