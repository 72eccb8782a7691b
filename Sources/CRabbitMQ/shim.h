#ifndef TERN_CRABBITMQ_SHIM_H
#define TERN_CRABBITMQ_SHIM_H
// librabbitmq 0.11 keeps its headers at the top level (0.12+ moved them to <rabbitmq-c/...>).
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <poll.h>
#include <errno.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/// Names the calling thread (at most 15 characters reach the kernel) and lowers its scheduling
/// priority to `nice` (Linux keeps niceness per thread): the AMQP threads are background work that
/// must not hold a core a SIP event loop wants. Named here rather than through Foundation's
/// Thread.name, which names the OS thread only when the starting thread has already recorded the
/// new thread's handle: a race the new thread can win on a busy machine. Raising niceness needs
/// no privilege. Returns 0, or -1 with errno set.
static inline int tern_amqp_thread_begin(const char *name, int nice) {
    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) return -1;
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

/// Opens the TCP socket, giving up after `timeout_ms`.
static inline int tern_amqp_open(amqp_socket_t *socket, const char *host, int port, int timeout_ms) {
    struct timeval timeout;
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_usec = (timeout_ms % 1000) * 1000;
    return amqp_socket_open_noblock(socket, host, port, &timeout);
}

/// Bytes without a copy; Swift keeps them alive around the call.
static inline amqp_bytes_t tern_amqp_bytes(const void *bytes, size_t length) {
    amqp_bytes_t result;
    result.len = length;
    result.bytes = (void *)bytes;
    return result;
}

/// What a method frame is, and the delivery tag and multiple flag of an ack or nack.
typedef struct {
    int status;          // AMQP_STATUS_OK, AMQP_STATUS_TIMEOUT, or an error
    int is_method;
    uint32_t method;
    uint64_t delivery_tag;
    int multiple;
} tern_amqp_frame_t;

/// Waits up to `timeout_ms` for one frame (heartbeats are answered inside librabbitmq).
static inline tern_amqp_frame_t tern_amqp_wait_frame(amqp_connection_state_t connection, int timeout_ms) {
    tern_amqp_frame_t result = {0, 0, 0, 0, 0};
    amqp_frame_t frame;
    struct timeval timeout;
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_usec = (timeout_ms % 1000) * 1000;
    result.status = amqp_simple_wait_frame_noblock(connection, &frame, &timeout);
    if (result.status != AMQP_STATUS_OK) return result;
    if (frame.frame_type == AMQP_FRAME_METHOD) {
        result.is_method = 1;
        result.method = frame.payload.method.id;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = (amqp_basic_ack_t *)frame.payload.method.decoded;
            result.delivery_tag = ack->delivery_tag;
            result.multiple = ack->multiple;
        } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            amqp_basic_nack_t *nack = (amqp_basic_nack_t *)frame.payload.method.decoded;
            result.delivery_tag = nack->delivery_tag;
            result.multiple = nack->multiple;
        }
    }
    return result;
}

/// Plain login on a virtual host with a heartbeat, default frame and channel limits.
static inline amqp_rpc_reply_t tern_amqp_login_plain(amqp_connection_state_t connection, const char *vhost, int heartbeat,
                                                     const char *user, const char *password) {
    return amqp_login(connection, vhost, 0, 131072, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

/// basic.get with automatic ack: 1 and `message` filled (free it with amqp_destroy_message), 0 when
/// the queue is empty, -1 on error. For consumers in tests and tools.
static inline int tern_amqp_get(amqp_connection_state_t connection, amqp_channel_t channel, amqp_bytes_t queue,
                                amqp_message_t *message) {
    amqp_rpc_reply_t reply = amqp_basic_get(connection, channel, queue, 1);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) return -1;
    if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return 0;
    if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) return -1;
    reply = amqp_read_message(connection, channel, message, 0);
    return reply.reply_type == AMQP_RESPONSE_NORMAL ? 1 : -1;
}

/// A queue bound to a topic exchange (declared too), durable or exclusive.
static inline int tern_amqp_bind_queue(amqp_connection_state_t connection, amqp_channel_t channel, const char *exchange,
                                       const char *queue, int durable, const char *binding_key) {
    amqp_exchange_declare(connection, channel, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    if (amqp_get_rpc_reply(connection).reply_type != AMQP_RESPONSE_NORMAL) return -1;
    amqp_queue_declare(connection, channel, amqp_cstring_bytes(queue), 0, durable, !durable, 0, amqp_empty_table);
    if (amqp_get_rpc_reply(connection).reply_type != AMQP_RESPONSE_NORMAL) return -1;
    amqp_queue_bind(connection, channel, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange), amqp_cstring_bytes(binding_key),
                    amqp_empty_table);
    return amqp_get_rpc_reply(connection).reply_type == AMQP_RESPONSE_NORMAL ? 0 : -1;
}

/// Starts consuming a queue with manual acks, at most `prefetch` unacked deliveries at a time.
static inline int tern_amqp_consume(amqp_connection_state_t connection, amqp_channel_t channel, const char *queue, int prefetch) {
    amqp_basic_qos(connection, channel, 0, (uint16_t)prefetch, 0);
    if (amqp_get_rpc_reply(connection).reply_type != AMQP_RESPONSE_NORMAL) return -1;
    amqp_basic_consume(connection, channel, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(connection).reply_type == AMQP_RESPONSE_NORMAL ? 0 : -1;
}

/// Waits up to `timeout_ms` for a delivery: 1 with `envelope` filled (free it with
/// amqp_destroy_envelope), 0 on timeout, otherwise a negative librabbitmq status (for a frame
/// that is not a delivery, such as the broker closing the channel, AMQP_STATUS_UNEXPECTED_STATE).
static inline int tern_amqp_next_delivery(amqp_connection_state_t connection, int timeout_ms, amqp_envelope_t *envelope) {
    struct timeval timeout;
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_usec = (timeout_ms % 1000) * 1000;
    amqp_maybe_release_buffers(connection);
    amqp_rpc_reply_t reply = amqp_consume_message(connection, envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return 1;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        if (reply.library_error == AMQP_STATUS_TIMEOUT) return 0;
        return reply.library_error < 0 ? reply.library_error : -1;
    }
    return -1;
}

/// The reply property of a delivery, or empty bytes.
static inline amqp_bytes_t tern_amqp_reply_to(const amqp_envelope_t *envelope) {
    if (envelope->message.properties._flags & AMQP_BASIC_REPLY_TO_FLAG) return envelope->message.properties.reply_to;
    return amqp_empty_bytes;
}

static inline amqp_bytes_t tern_amqp_correlation_id(const amqp_envelope_t *envelope) {
    if (envelope->message.properties._flags & AMQP_BASIC_CORRELATION_ID_FLAG) return envelope->message.properties.correlation_id;
    return amqp_empty_bytes;
}

/// A JSON reply through the default exchange to the queue named by `reply_to`, with the
/// request's correlation id when it had one (not persistent: a reply is for a waiting caller).
static inline int tern_amqp_publish_reply(amqp_connection_state_t connection, amqp_channel_t channel, amqp_bytes_t reply_to,
                                          amqp_bytes_t correlation_id, amqp_bytes_t body) {
    amqp_basic_properties_t properties;
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    if (correlation_id.len > 0) {
        properties._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        properties.correlation_id = correlation_id;
    }
    return amqp_basic_publish(connection, channel, amqp_empty_bytes, reply_to, 0, 0, &properties, body);
}

/// A request with reply_to and correlation_id (tests and tools that send commands).
static inline int tern_amqp_publish_request(amqp_connection_state_t connection, amqp_channel_t channel, amqp_bytes_t exchange,
                                            amqp_bytes_t routing_key, amqp_bytes_t reply_to, amqp_bytes_t correlation_id,
                                            amqp_bytes_t body) {
    amqp_basic_properties_t properties;
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    properties.reply_to = reply_to;
    properties.correlation_id = correlation_id;
    return amqp_basic_publish(connection, channel, exchange, routing_key, 0, 0, &properties, body);
}

/// Messages ready in a queue (passive declare), or -1 when it does not exist (tests and tools).
static inline long tern_amqp_queue_depth(amqp_connection_state_t connection, amqp_channel_t channel, const char *queue) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(connection, channel, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    if (ok == NULL || amqp_get_rpc_reply(connection).reply_type != AMQP_RESPONSE_NORMAL) return -1;
    return (long)ok->message_count;
}

/// Writes already-encoded frames to the connection's socket (a plain TCP socket, which librabbitmq
/// keeps non-blocking), waiting up to `timeout_ms` whenever the socket buffer is full. 0 when all
/// was written, -1 otherwise.
static inline int tern_amqp_send_frames(amqp_connection_state_t connection, const void *bytes, size_t length, int timeout_ms) {
    int fd = amqp_get_sockfd(connection);
    if (fd < 0) return -1;
    const char *next = (const char *)bytes;
    while (length > 0) {
        ssize_t sent = send(fd, next, length, MSG_NOSIGNAL);
        if (sent > 0) {
            next += sent;
            length -= (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd ready = {fd, POLLOUT, 0};
            if (poll(&ready, 1, timeout_ms) <= 0) return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

static inline int tern_amqp_reply_ok(amqp_rpc_reply_t reply) { return reply.reply_type == AMQP_RESPONSE_NORMAL; }
#endif
