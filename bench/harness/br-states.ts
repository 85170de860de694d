// Approximate geographic centroids of Brazil's 27 federative units (26 states and the Federal District),
// in degrees, to 0.1°. The Olist replay places each seller state's warehouse, and each customer, at its
// state's centroid: the sample carries states and zip prefixes but no coordinates. 0.1° ≈ 11 km, far below
// the 100–3,000 km between states that routing weighs; within a state every distance is 0.

export type LatLon = { lat: number; lon: number };

export const brazilStateCentroids: Readonly<Record<string, LatLon>> = {
  AC: { lat: -9.0, lon: -70.5 },
  AL: { lat: -9.6, lon: -36.6 },
  AM: { lat: -4.2, lon: -64.6 },
  AP: { lat: 1.4, lon: -51.8 },
  BA: { lat: -12.5, lon: -41.7 },
  CE: { lat: -5.2, lon: -39.5 },
  DF: { lat: -15.8, lon: -47.8 },
  ES: { lat: -19.6, lon: -40.6 },
  GO: { lat: -16.0, lon: -49.6 },
  MA: { lat: -5.0, lon: -45.3 },
  MG: { lat: -18.5, lon: -44.6 },
  MS: { lat: -20.5, lon: -54.8 },
  MT: { lat: -12.9, lon: -55.9 },
  PA: { lat: -3.8, lon: -52.5 },
  PB: { lat: -7.1, lon: -36.8 },
  PE: { lat: -8.4, lon: -37.9 },
  PI: { lat: -7.4, lon: -42.5 },
  PR: { lat: -24.6, lon: -51.6 },
  RJ: { lat: -22.3, lon: -42.7 },
  RN: { lat: -5.8, lon: -36.6 },
  RO: { lat: -10.9, lon: -62.8 },
  RR: { lat: 2.1, lon: -61.4 },
  RS: { lat: -29.7, lon: -53.3 },
  SC: { lat: -27.3, lon: -50.5 },
  SE: { lat: -10.6, lon: -37.4 },
  SP: { lat: -22.2, lon: -48.7 },
  TO: { lat: -10.2, lon: -48.3 },
};

/** The centroid of a state code (case-insensitive), or null for anything else. */
export function stateCentroid(state: string | null | undefined): LatLon | null {
  if (typeof state !== "string") return null;
  const key = state.trim().toUpperCase();
  return Object.hasOwn(brazilStateCentroids, key) ? (brazilStateCentroids[key] as LatLon) : null;
}
