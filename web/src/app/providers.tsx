"use client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { restoreSession } from "@/api/session";
import { ApiError } from "@/api/errors";
import { LiveEvents } from "@/components/LiveEvents";
import { ImpressionFlusher } from "@/components/ImpressionFlusher";

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
