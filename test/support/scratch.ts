/** Layers on throwaway resources (a temp directory, a scratch database, an rqlite server). */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** `make`'s layer on a resource that is acquired when the layer is built and released with it. */
export const layerOnScratch = <T, A, E, R>(
  acquire: () => Promise<T>,
  release: (resource: T) => Promise<void>,
  make: (resource: T) => Layer.Layer<A, E, R>,
): Layer.Layer<A, E, R> =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(Effect.promise(acquire), (resource) => Effect.promise(() => release(resource))),
      make,
    ),
  )
