/**
 * A TCP proxy on a free loopback port in front of a server, that can be frozen: while frozen
 * it accepts and holds bytes but forwards nothing, like a server that stopped answering.
 */
import * as net from "node:net"

export interface Proxy {
  readonly port: number
  readonly freeze: () => void
  readonly close: () => Promise<void>
}

export const startProxy = (targetPort: number): Promise<Proxy> =>
  new Promise((resolve, reject) => {
    let frozen = false
    const sockets = new Set<net.Socket>()
    const server = net.createServer((client) => {
      const upstream = net.connect(targetPort, "127.0.0.1")
      for (const socket of [client, upstream]) {
        sockets.add(socket)
        socket.on("error", () => socket.destroy())
        socket.on("close", () => sockets.delete(socket))
      }
      client.on("data", (chunk) => {
        if (!frozen) upstream.write(chunk)
      })
      upstream.on("data", (chunk) => {
        if (!frozen) client.write(chunk)
      })
      client.on("end", () => upstream.end())
      upstream.on("end", () => client.end())
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        freeze: () => {
          frozen = true
        },
        close: () =>
          new Promise((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          }),
      }),
    )
  })
