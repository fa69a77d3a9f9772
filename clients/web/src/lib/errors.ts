import { create, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

/** ErrorInfo reasons notifyd sets (google.rpc.ErrorInfo, domain "notify"). */
export const Reason = {
  TokenMissing: "TOKEN_MISSING",
  TokenInvalid: "TOKEN_INVALID",
  TokenExpired: "TOKEN_EXPIRED",
  PermissionDenied: "PERMISSION_DENIED",
  InvalidArgument: "INVALID_ARGUMENT",
  InvalidRoom: "INVALID_ROOM",
  SlowConsumer: "SLOW_CONSUMER",
  ServerRestart: "SERVER_RESTART",
  BrokerUnavailable: "BROKER_UNAVAILABLE",
} as const;

// google.rpc.ErrorInfo, described at run time: the contract imports no
// google/rpc protos, and three fields do not justify generating them.
const errorDetailsFile = create(FileDescriptorProtoSchema, {
  name: "google/rpc/error_details.proto",
  package: "google.rpc",
  syntax: "proto3",
  messageType: [
    {
      name: "ErrorInfo",
      field: [
        { name: "reason", number: 1, type: 9, label: 1, jsonName: "reason" },
        { name: "domain", number: 2, type: 9, label: 1, jsonName: "domain" },
        {
          name: "metadata",
          number: 3,
          type: 11,
          label: 3,
          typeName: ".google.rpc.ErrorInfo.MetadataEntry",
          jsonName: "metadata",
        },
      ],
      nestedType: [
        {
          name: "MetadataEntry",
          field: [
            { name: "key", number: 1, type: 9, label: 1, jsonName: "key" },
            { name: "value", number: 2, type: 9, label: 1, jsonName: "value" },
          ],
          options: { mapEntry: true },
        },
      ],
    },
  ],
});

/** The descriptor of google.rpc.ErrorInfo, for ConnectError.findDetails. */
export const ErrorInfoSchema: DescMessage = createFileRegistry(errorDetailsFile, () => undefined).getMessage(
  "google.rpc.ErrorInfo",
)!;

/** The fields of a google.rpc.ErrorInfo detail. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** Returns the ErrorInfo detail of an error, if it has one. */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  try {
    const [info] = err.findDetails(ErrorInfoSchema) as unknown as ErrorInfo[];
    return info ? { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } } : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the ErrorInfo reason of an error (TOKEN_EXPIRED, ...), or "". */
export function errorReason(err: unknown): string {
  return errorInfo(err)?.reason ?? "";
}

/** Converts anything thrown into a ConnectError. */
export function toConnectError(err: unknown): ConnectError {
  return ConnectError.from(err);
}

/**
 * Reports whether retrying with the same request and credentials cannot
 * help: InvalidArgument, PermissionDenied, Unimplemented, and
 * Unauthenticated for any reason but an expired token.
 */
export function isPermanent(err: unknown): boolean {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.InvalidArgument:
    case Code.PermissionDenied:
    case Code.Unimplemented:
      return true;
    case Code.Unauthenticated:
      return errorReason(e) !== Reason.TokenExpired;
    default:
      return false;
  }
}

/** Reports whether err says the token expired (retry with a fresh one). */
export function isTokenExpired(err: unknown): boolean {
  const e = ConnectError.from(err);
  return e.code === Code.Unauthenticated && errorReason(e) === Reason.TokenExpired;
}

/**
 * Reports whether a call failed on the way (network, server restarting or
 * overloaded) and may be sent again unchanged.
 */
export function isTransient(err: unknown): boolean {
  const e = ConnectError.from(err);
  return e.code === Code.Unavailable || e.code === Code.Unknown || e.code === Code.DeadlineExceeded;
}
