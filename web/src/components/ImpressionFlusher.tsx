"use client";
import { useEffect } from "react";
import { impressionQueue } from "@/api/impressions";

/** Sends waiting impressions every 5 s and when the page is hidden. */
export function ImpressionFlusher() {
  useEffect(() => {
    const id = setInterval(() => void impressionQueue.flush(), 5000);
    const onHide = () => {
      if (document.visibilityState === "hidden") void impressionQueue.flush();
    };
    document.addEventListener("visibilitychange", onHide);
    return () => {
      clearInterval(id);
      document.removeEventListener("visibilitychange", onHide);
    };
  }, []);
  return null;
}
