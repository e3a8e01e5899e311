/** Where the API lives: "" means the page's own origin (production); set NEXT_PUBLIC_API_BASE in dev. */
export const API_BASE: string = (process.env.NEXT_PUBLIC_API_BASE ?? "").replace(/\/$/, "");
