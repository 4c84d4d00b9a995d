/**
 * A TCP proxy on a free loopback port in front of a server, that the test can take away and
 * give back without giving up its port:
 * - `pause()` holds the bytes of both directions (a network that stopped moving them); `resume()`
 *   delivers them, in order, and forwards again;
 * - `cut()` closes every connection and closes each new one at once (a server that is down);
 *   `restore()` accepts again.
 */
import * as net from "node:net"

export interface SwitchableProxy {
  readonly port: number
  readonly pause: () => void
  readonly resume: () => void
  readonly cut: () => void
  readonly restore: () => void
  /** How many connections were accepted so far. */
  readonly connections: () => number
  readonly close: () => Promise<void>
}

interface Pipe {
  readonly from: net.Socket
  readonly to: net.Socket
  held: Array<Buffer>
}

export const startSwitchableProxy = (targetPort: number): Promise<SwitchableProxy> =>
  new Promise((resolve, reject) => {
    let paused = false
    let down = false
    let accepted = 0
    const sockets = new Set<net.Socket>()
    const pipes = new Set<Pipe>()
    const forward = (pipe: Pipe) => {
      pipe.from.on("data", (chunk: Buffer) => {
        if (paused) pipe.held.push(chunk)
        else pipe.to.write(chunk)
      })
    }
    const server = net.createServer((client) => {
      sockets.add(client)
      client.on("error", () => client.destroy())
      client.on("close", () => sockets.delete(client))
      if (down) {
        client.destroy()
        return
      }
      accepted++
      const upstream = net.connect(targetPort, "127.0.0.1")
      sockets.add(upstream)
      upstream.on("error", () => upstream.destroy())
      upstream.on("close", () => {
        sockets.delete(upstream)
        client.destroy()
      })
      client.on("close", () => upstream.destroy())
      for (const pipe of [
        { from: client, to: upstream, held: [] },
        { from: upstream, to: client, held: [] },
      ]) {
        pipes.add(pipe)
        pipe.from.on("close", () => pipes.delete(pipe))
        forward(pipe)
      }
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        pause: () => {
          paused = true
        },
        resume: () => {
          paused = false
          for (const pipe of pipes) {
            for (const chunk of pipe.held) pipe.to.write(chunk)
            pipe.held = []
          }
        },
        cut: () => {
          down = true
          for (const socket of sockets) socket.destroy()
        },
        restore: () => {
          down = false
        },
        connections: () => accepted,
        close: () =>
          new Promise((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          }),
      }),
    )
  })
