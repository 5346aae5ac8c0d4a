import { h, show } from "../lib";

// pageDrills: run a failover drill and watch its timeline. (Being built:
// issue 19.)
export async function pageDrills(_signal: AbortSignal) {
  show(h("h1", {}, "Drills"));
}
