// Channel stock-sync rules and available-to-sell: pure, synchronous, clock-free.
export { atsOf, backedUnits, feedingWarehouses, isUrgent } from "./ats.ts";
export {
  type ChannelSync,
  channelSyncDefaults,
  channelSyncFields,
  everyWarehouse,
  marketplaceHeldOf,
  marketplaceHeldSkusMax,
  parseChannelSync,
} from "./rules.ts";
