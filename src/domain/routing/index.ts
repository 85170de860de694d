// Sourcing: which warehouse each line of an order ships from, and why (design.md §6).
export { distanceKm, nextCutoffMs } from "./geo.ts";
export { route } from "./router.ts";
export * from "./types.ts";
