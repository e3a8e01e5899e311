"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { signIn, signUp } from "@/api/session";
import { fieldErrors } from "@/api/errors";
import { FormError } from "./StatusViews";

const FIELDS = [
  { name: "handle", label: "Handle", type: "text", auto: "username", hint: "Letters, digits and underscores." },
  { name: "displayName", label: "Display name", type: "text", auto: "name", hint: "" },
  { name: "email", label: "Email", type: "email", auto: "email", hint: "We send a link to verify it." },
  { name: "password", label: "Password", type: "password", auto: "new-password", hint: "At least 8 characters." },
] as const;

type Values = Record<(typeof FIELDS)[number]["name"], string>;

export function SignUpForm() {
  const router = useRouter();
  const [values, setValues] = useState<Values>({ handle: "", displayName: "", email: "", password: "" });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const perField = fieldErrors(error);

  async function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const input = { ...values, handle: values.handle.trim().replace(/^@/, ""), displayName: values.displayName.trim() || values.handle.trim() };
      await signUp(input);
      try {
        await signIn(input.handle, input.password);
        router.replace("/");
      } catch {
        router.replace("/signin?created=1");
      }
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <form onSubmit={onSubmit} className="mx-auto mt-8 flex max-w-sm flex-col gap-4 px-4" aria-labelledby="signup-title" noValidate>
      <h1 id="signup-title" className="text-2xl font-bold">Create your account</h1>
      {FIELDS.map((f) => {
        const err = perField[f.name] ?? perField[f.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)];
        const describedBy = [f.hint ? `${f.name}-hint` : "", err ? `${f.name}-error` : ""].filter(Boolean).join(" ") || undefined;
        return (
          <div key={f.name}>
            <label htmlFor={f.name} className="label">{f.label}</label>
            <input
              id={f.name}
              name={f.name}
              type={f.type}
              className="input"
              autoComplete={f.auto}
              autoCapitalize="none"
              required={f.name !== "displayName"}
              aria-invalid={err ? true : undefined}
              aria-describedby={describedBy}
              value={values[f.name]}
              onChange={(e) => setValues((v) => ({ ...v, [f.name]: e.target.value }))}
            />
            {f.hint ? <p id={`${f.name}-hint`} className="mt-1 text-xs text-muted">{f.hint}</p> : null}
            {err ? <p id={`${f.name}-error`} className="mt-1 text-sm text-red-700 dark:text-red-300">{err}</p> : null}
          </div>
        );
      })}
      {Object.keys(perField).length ? null : <FormError error={error} />}
      <button type="submit" className="btn-primary" disabled={busy || !values.handle || !values.email || !values.password}>
        {busy ? "Creating…" : "Sign up"}
      </button>
      <p className="text-sm">
        Already have an account? <Link href="/signin" className="link">Sign in</Link>
      </p>
    </form>
  );
}
