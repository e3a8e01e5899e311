"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { api, unwrap } from "@/api/client";
import { humanMessage } from "@/api/errors";
import { useSession } from "@/state/session";
import { LoadingState } from "./StatusViews";

type State = { kind: "working" } | { kind: "done" } | { kind: "failed"; message: string } | { kind: "missing" };

async function verifyFromFragment(setState: (s: State) => void) {
  await Promise.resolve();
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  // drop the token from the address bar and history
  history.replaceState(null, "", window.location.pathname);
  if (!token) {
    setState({ kind: "missing" });
    return;
  }
  try {
    await unwrap(api.POST("/v1/users:verifyEmail", { body: { token } }));
    // The session restored beside this call may hold the user from before it.
    const { user, setUser } = useSession.getState();
    if (user) setUser({ ...user, emailVerified: true });
    setState({ kind: "done" });
  } catch (e) {
    setState({ kind: "failed", message: humanMessage(e) });
  }
}

/** The mail link lands here with the token in the fragment (never sent to a server's logs). */
export function VerifyEmail() {
  const [state, setState] = useState<State>({ kind: "working" });
  useEffect(() => {
    void verifyFromFragment(setState);
  }, []);

  return (
    <section className="mx-auto mt-8 max-w-sm px-4" aria-labelledby="verify-title">
      <h1 id="verify-title" className="mb-4 text-2xl font-bold">Verify your email</h1>
      {state.kind === "working" ? <LoadingState label="Verifying" /> : null}
      {state.kind === "done" ? (
        <p role="status">Thanks, your email address is verified. <Link href="/" className="link">Continue</Link></p>
      ) : null}
      {state.kind === "failed" ? (
        <p role="alert">This link didn&apos;t work: {state.message} Links work once, for 24 hours. You can ask for a new one in Settings.</p>
      ) : null}
      {state.kind === "missing" ? <p role="alert">This page needs the link from your email. Open the link in the message we sent you.</p> : null}
    </section>
  );
}
