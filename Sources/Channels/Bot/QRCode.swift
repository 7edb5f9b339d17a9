import CPNG
import CQREncode
import Foundation

/// A QR code as a PNG picture: libqrencode draws the modules, libpng's simplified API writes them
/// (8 pixels a module, a 4-module quiet zone, black on white, grey 8-bit).
public enum QRCode {
    public enum Failure: Error { case encode, png }

    public static func png(_ text: String, scale: Int = 8) throws -> [UInt8] {
        guard let code = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M) else { throw Failure.encode }
        defer { QRcode_free(code) }
        let width = Int(code.pointee.width)
        let margin = 4
        let side = (width + 2 * margin) * scale
        var pixels = [UInt8](repeating: 255, count: side * side)
        for y in 0..<width {
            for x in 0..<width where code.pointee.data[y * width + x] & 1 == 1 {
                for dy in 0..<scale {
                    let row = ((y + margin) * scale + dy) * side
                    for dx in 0..<scale { pixels[row + (x + margin) * scale + dx] = 0 }
                }
            }
        }
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(side)
        image.height = png_uint_32(side)
        image.format = png_uint_32(PNG_FORMAT_GRAY)
        var size: png_alloc_size_t = 0
        guard png_image_write_to_memory(&image, nil, &size, 0, pixels, png_int_32(side), nil) != 0, size > 0 else { throw Failure.png }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = output.withUnsafeMutableBytes { buffer in
            png_image_write_to_memory(&image, buffer.baseAddress, &size, 0, pixels, png_int_32(side), nil)
        }
        png_image_free(&image)
        guard written != 0 else { throw Failure.png }
        return Array(output.prefix(Int(size)))
    }
}
