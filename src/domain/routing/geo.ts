const earthRadiusKm = 6371.0088;
const rad = Math.PI / 180;

/** Great-circle distance in km (haversine): accurate to ~0.5 %, which is far below what routing needs. */
export function distanceKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * earthRadiusKm * Math.asin(Math.min(1, Math.sqrt(a)));
}

const dayMs = 86_400_000;
const minuteMs = 60_000;

/**
 * The next time (UTC ms) parcels handed over at a warehouse leave with a carrier whose daily cut-off is
 * `cutoffMinute` after local midnight: today's cut-off if it has not passed, else tomorrow's.
 */
export function nextCutoffMs(nowMs: number, cutoffMinute: number, utcOffsetMinutes: number): number {
  const local = nowMs + utcOffsetMinutes * minuteMs;
  let cut = Math.floor(local / dayMs) * dayMs + cutoffMinute * minuteMs;
  if (cut < local) cut += dayMs;
  return cut - utcOffsetMinutes * minuteMs;
}
