import Link from "next/link";

export default function NotFound() {
  return (
    <section className="p-8 text-center">
      <h1 className="text-2xl font-bold">Page not found</h1>
      <p className="mt-2">
        <Link href="/" className="link">Go home</Link>
      </p>
    </section>
  );
}
