# Build: a static binary (pure Go, no cgo).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/salesos ./cmd/salesos \
 && mkdir -p /out/data

# Run: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/salesos /usr/local/bin/salesos
# The data directory must belong to the runtime user, or a fresh named
# volume mounted there would be root's and the development issuer's key
# could not be written.
COPY --from=build --chown=65532:65532 /out/data /data
# Production unless told otherwise: without SALESOS_OIDC_ISSUER the server
# refuses to start rather than run its development token issuer.
ENV SALESOS_ENV=production SALESOS_ADDR=:8080 SALESOS_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/salesos"]
CMD ["serve"]
