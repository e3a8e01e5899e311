import type { Metadata, Viewport } from "next";
import { Suspense } from "react";
import "./globals.css";
import { Providers } from "./providers";
import { AppHeader } from "@/components/AppHeader";

export const metadata: Metadata = {
  title: { default: "socialmesh", template: "%s · socialmesh" },
  description: "socialmesh: posts, people and conversations",
};

export const viewport: Viewport = {
  width: "device-width",
  initialScale: 1,
  colorScheme: "light dark",
};

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body className="min-h-screen antialiased">
        <Providers>
          <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-blue-700 focus:p-2 focus:text-white">
            Skip to content
          </a>
          <Suspense>
            <AppHeader />
          </Suspense>
          <main id="main" className="mx-auto w-full max-w-2xl pb-16">
            {children}
          </main>
        </Providers>
      </body>
    </html>
  );
}
