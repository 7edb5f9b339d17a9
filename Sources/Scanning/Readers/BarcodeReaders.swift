import CZBar
import ZXingShim

/// One barcode a decoder read from an image.
public struct DecodedBarcode: Sendable, Equatable {
    public var text: String
    public var symbology: Symbology
    /// Which decoder read it (`zbar`, `zxing`).
    public var decoder: String
}

/// ZBar, as the original design names it: scans rows and columns of the image for linear codes
/// and finds QR codes. A scanner is made per call (cheap), so calls on many threads are safe.
enum ZBarReader {
    static let y800: UInt = 0x3030_3859  // fourcc "Y800": 8-bit grayscale

    static func read(_ image: GrayImage) -> [DecodedBarcode] {
        guard let scanner = zbar_image_scanner_create() else { return [] }
        defer { zbar_image_scanner_destroy(scanner) }
        // Only the formats labels carry: every other one enabled is a chance of a false read
        // (ZBar's DataBar decoder finds "codes" in noise). UPC-A is reported as itself, not as
        // an EAN-13 with a leading zero.
        zbar_image_scanner_set_config(scanner, ZBAR_NONE, ZBAR_CFG_ENABLE, 0)
        for symbology in [ZBAR_EAN13, ZBAR_EAN8, ZBAR_UPCA, ZBAR_UPCE, ZBAR_I25, ZBAR_CODE39, ZBAR_CODE128, ZBAR_QRCODE] {
            zbar_image_scanner_set_config(scanner, symbology, ZBAR_CFG_ENABLE, 1)
        }
        guard let zimage = zbar_image_create() else { return [] }
        defer { zbar_image_destroy(zimage) }
        zbar_image_set_format(zimage, y800)
        zbar_image_set_size(zimage, UInt32(image.width), UInt32(image.height))
        var found: [DecodedBarcode] = []
        image.pixels.withUnsafeBufferPointer { buffer in
            zbar_image_set_data(zimage, buffer.baseAddress, UInt(buffer.count), nil)
            guard zbar_scan_image(scanner, zimage) > 0 else { return }
            var symbol = zbar_image_first_symbol(zimage)
            while let current = symbol {
                if let data = zbar_symbol_get_data(current), let symbology = symbology(zbar_symbol_get_type(current)) {
                    let text = String(cString: data)
                    if !text.isEmpty { found.append(DecodedBarcode(text: text, symbology: symbology, decoder: "zbar")) }
                }
                symbol = zbar_symbol_next(current)
            }
            // The image must not keep a pointer into the buffer past this closure.
            zbar_image_set_data(zimage, nil, 0, nil)
        }
        return found
    }

    static func symbology(_ type: zbar_symbol_type_t) -> Symbology? {
        switch type {
        case ZBAR_EAN13: .ean13
        case ZBAR_EAN8: .ean8
        case ZBAR_UPCA: .upca
        case ZBAR_UPCE: .upce
        case ZBAR_I25: .itf
        case ZBAR_CODE39: .code39
        case ZBAR_CODE93: .code93
        case ZBAR_CODE128: .code128
        case ZBAR_CODABAR: .codabar
        case ZBAR_QRCODE: .qr
        default: nil
        }
    }
}

/// zxing-cpp (through `ZXingShim`): better than ZBar at blurred, small and damaged codes.
enum ZXingReader {
    static func read(_ image: GrayImage, tryHarder: Bool) -> [DecodedBarcode] {
        var results = [zxs_result](repeating: zxs_result(), count: 8)
        let count = image.pixels.withUnsafeBufferPointer { pixels in
            results.withUnsafeMutableBufferPointer { out in
                zxs_read_gray(pixels.baseAddress, Int32(image.width), Int32(image.height), Int32(image.width), tryHarder ? 1 : 0, out.baseAddress, Int32(out.count))
            }
        }
        guard count > 0 else { return [] }
        return results.prefix(Int(count)).compactMap { result in
            var result = result
            let text = withUnsafeBytes(of: &result.text) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            guard !text.isEmpty, let symbology = symbology(result.format) else { return nil }
            return DecodedBarcode(text: text, symbology: symbology, decoder: "zxing")
        }
    }

    /// zxing-cpp's `BarcodeFormat` bits.
    static func symbology(_ format: Int32) -> Symbology? {
        switch format {
        case 1 << 1: .codabar
        case 1 << 2: .code39
        case 1 << 3: .code93
        case 1 << 4: .code128
        case 1 << 7: .datamatrix
        case 1 << 8: .ean8
        case 1 << 9: .ean13
        case 1 << 10: .itf
        case 1 << 13: .qr
        case 1 << 14: .upca
        case 1 << 15: .upce
        default: nil
        }
    }
}
