import type { User } from "@/api/types";

const SIZES = { sm: "h-8 w-8 text-xs", md: "h-10 w-10 text-sm", lg: "h-20 w-20 text-2xl" } as const;

/** The round picture next to a name; initials when there is no picture. Decorative: the name is next to it. */
export function Avatar({ user, size = "md" }: { user: Pick<User, "avatarUrl" | "displayName" | "handle"> | null | undefined; size?: keyof typeof SIZES }) {
  const cls = `${SIZES[size]} shrink-0 rounded-full bg-slate-300 dark:bg-slate-700 object-cover`;
  if (user?.avatarUrl) {
    // eslint-disable-next-line @next/next/no-img-element
    return <img src={user.avatarUrl} alt="" className={cls} width={80} height={80} loading="lazy" />;
  }
  const name = user?.displayName || user?.handle || "?";
  return (
    <span aria-hidden="true" className={`${cls} flex items-center justify-center font-semibold text-slate-800 dark:text-slate-100`}>
      {name.slice(0, 1).toUpperCase()}
    </span>
  );
}
