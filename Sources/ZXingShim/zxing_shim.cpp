// A C face on the few zxing-cpp calls sessiond makes, so Swift needs no C++ interop.
#define ZX_USE_UTF8 1
#include "zxing_shim.h"

#include <ReadBarcode.h>
#include <cstring>
#include <exception>

extern "C" int zxs_read_gray(const uint8_t *pixels, int width, int height, int stride, int try_harder, zxs_result *out, int capacity) {
    try {
        ZXing::ImageView image(pixels, width, height, ZXing::ImageFormat::Lum, stride);
        ZXing::DecodeHints hints;
        hints.setFormats(ZXing::BarcodeFormat::Code128 | ZXing::BarcodeFormat::Code39 | ZXing::BarcodeFormat::EAN13
                         | ZXing::BarcodeFormat::EAN8 | ZXing::BarcodeFormat::UPCA | ZXing::BarcodeFormat::UPCE
                         | ZXing::BarcodeFormat::ITF | ZXing::BarcodeFormat::QRCode | ZXing::BarcodeFormat::DataMatrix);
        hints.setTryHarder(try_harder != 0);
        hints.setTryRotate(try_harder != 0);
        hints.setTryDownscale(true);
        // One symbol: with more, zxing-cpp 1.4 compares results with an assertion that Debian's
        // build keeps and some linear codes fail (upstream issue 740), which would abort the process.
        hints.setMaxNumberOfSymbols(1);
        auto results = ZXing::ReadBarcodes(image, hints);
        int count = 0;
        for (const auto &result : results) {
            if (count >= capacity) break;
            if (!result.isValid()) continue;
            zxs_result &slot = out[count];
            std::string text = result.text();
            std::size_t length = text.size() < sizeof(slot.text) - 1 ? text.size() : sizeof(slot.text) - 1;
            std::memcpy(slot.text, text.data(), length);
            slot.text[length] = 0;
            slot.format = static_cast<int>(result.format());
            const auto &position = result.position();
            for (int corner = 0; corner < 4; ++corner) {
                slot.x[corner] = position[corner].x;
                slot.y[corner] = position[corner].y;
            }
            ++count;
        }
        return count;
    } catch (const std::exception &) {
        return -1;
    } catch (...) {
        return -1;
    }
}
