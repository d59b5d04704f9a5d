import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { daemonOptionsFromConfig } from "../../src/daemon/options.js"

describe("daemonOptionsFromConfig", () => {
  it.effect("[adjutant] batch_hub_calls turns multiCall batching on (default) or off (kojid's exact calls)", () =>
    Effect.gen(function*() {
      const batched = daemonOptionsFromConfig(yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest()))
      assert.isTrue(batched.batchHubCalls)
      const exact = daemonOptionsFromConfig(yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { batch_hub_calls: false } })))
      assert.isFalse(exact.batchHubCalls)
    }))
})
