import { api, unwrap } from "./client";
import { ImpressionQueue } from "@/lib/impressions";

export const impressionQueue = new ImpressionQueue(async (impressions) => {
  await unwrap(api.POST("/v1/feed:recordImpressions", { body: { impressions } }));
});
